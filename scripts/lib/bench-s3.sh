# Shared by scripts/bench-backup-s3.sh and scripts/bench-pitr.sh (source it; bash only): a spare
# port, and a private moto S3 server with a "bench" bucket and the AWS_* variables pointing at it.

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_moto WORK_DIR: starts moto_server on a spare port (its log in WORK_DIR/moto.log), appends
# its pid to PIDS (the caller's cleanup kills it), creates the bucket "bench", exports
# AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and a
# fresh BACKUP_ENCRYPTION_KEY, and sets MOTO_PORT.
start_moto() {
  command -v moto_server >/dev/null || { echo "moto_server is required (pip install 'moto[server]')" >&2; exit 1; }
  MOTO_PORT=$(free_port)
  moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$1/moto.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 120); do curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" && break; sleep 0.5; done
  # moto without IAM checks accepts any signature; the header only routes the request to S3.
  curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$MOTO_PORT/bench" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
    AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret
  export BACKUP_ENCRYPTION_KEY
  BACKUP_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
}
