# Source this: makes (once) a Python virtual environment under target/ with
# the real clients of the token systems narrowgate stands in for, from PyPI,
# and exports NARROWGATE_TEST_PYTHON (its interpreter) for the facade tests.
# Idempotent: an environment whose requirements match is reused.

PY_REQ=tests/python/requirements.txt
PY_ENV=target/pyenv
want=$(sha256sum "$PY_REQ" | cut -d' ' -f1)
if [ "$(cat "$PY_ENV/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "== making the Python environment for the client tests ($PY_ENV)"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv
  fi
  # The marker is written last: an interrupted install is redone.
  rm -rf "$PY_ENV"
  python3 -m venv "$PY_ENV"
  ok=0
  for attempt in 1 2 3; do
    if "$PY_ENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQ"; then ok=1; break; fi
    echo "pip install failed (attempt $attempt); retrying" >&2
    sleep 5
  done
  [ "$ok" = 1 ] || { echo "the Python clients could not be installed" >&2; return 1; }
  echo "$want" > "$PY_ENV/.requirements"
fi
NARROWGATE_TEST_PYTHON="$(pwd)/$PY_ENV/bin/python"
export NARROWGATE_TEST_PYTHON
echo "== Python clients in $PY_ENV"
