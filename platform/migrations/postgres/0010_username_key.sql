-- Usernames are unique under case folding and Unicode look-alikes (UTS #39 confusable
-- skeletons): `username_key` holds the key the platform computes for every new name
-- (`input::username_key`), and a unique index refuses a second name with the same key.
--
-- Existing names are keyed here. On the registration alphabet [A-Za-z0-9_.-] the key of a name is
-- its lower-case form with `m` → `rn`, `0` → `o` and `1` → `l` (the only skeleton mappings on that
-- alphabet; a test checks this against the crate). Names outside the alphabet keep a NULL key
-- and log in by their exact name. Where existing names already collide (`admin` and `ADMIN`), the
-- oldest keeps the key and the others keep working under their exact name: no new name can take
-- the key, and nobody loses an account.
ALTER TABLE users ADD COLUMN username_key TEXT;

UPDATE users
SET username_key = replace(replace(replace(lower(username), 'm', 'rn'), '0', 'o'), '1', 'l')
WHERE username ~ '^[A-Za-z0-9_.-]+$';

UPDATE users
SET username_key = NULL
WHERE username_key IS NOT NULL
  AND EXISTS (
      SELECT 1 FROM users older
      WHERE older.username_key = users.username_key AND older.id < users.id
  );

CREATE UNIQUE INDEX users_username_fold_key ON users (username_key);
