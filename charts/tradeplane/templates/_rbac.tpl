{{/*
The operator's permissions: THE one list, used by the ClusterRole (all namespaces) or the Role
(one watched namespace) in rbac.yaml. Exactly what `tradeplane-operator run` does:
- reads and watches TradingPlatforms, patches them (finalizer) and their status;
- owns the children it creates for each one (server-side apply = patch; deletes the ones a
  feature switch no longer wants; watches them to put back drift);
- reads pods: those of finished backup Jobs (their termination message: size, rows, duration),
  and, during a canary rollout, the canary and stable pods whose `/metrics` it analyses;
- records Events about what it does (events.k8s.io, which kube's recorder uses);
- sets ownerReferences with blockOwnerDeletion, hence update on tradingplatforms/finalizers.
Leader election's Lease is granted separately, in the release namespace only (rbac.yaml).
Keep k8s/operator/rbac.yaml in step with this list.
*/}}
{{- define "tradeplane.operatorRules" -}}
- apiGroups: ["tradeplane.io"]
  resources: ["tradingplatforms"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tradeplane.io"]
  resources: ["tradingplatforms/status"]
  verbs: ["get", "patch"]
- apiGroups: ["tradeplane.io"]
  resources: ["tradingplatforms/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses", "networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Leader election: the Lease, in the release namespace. */}}
{{- define "tradeplane.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end -}}
