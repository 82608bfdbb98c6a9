#!/usr/bin/env bash
# Proto checks: buf lint (protos/buf.yaml), and buf breaking against the last release tag (v*), or against the
# previous commit while there is no release. Before the first release a commit may break the API on purpose:
# it says so with a "Proto-Break: <why>" line in its message. Stubs are regenerated and compared by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.ci/tools
[ -x "$tools/node_modules/.bin/buf" ] || npm install --no-save --silent --prefix "$tools" @bufbuild/buf@1.75.0
buf="$tools/node_modules/.bin/buf"
"$buf" lint protos
echo "buf lint: clean"
if base=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); then
  "$buf" breaking protos --against ".git#ref=$base,subdir=protos"
  echo "buf breaking: no breaking change since $base"
elif git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
  if "$buf" breaking protos --against '.git#ref=HEAD~1,subdir=protos'; then
    echo "buf breaking: no breaking change since the previous commit (no release tag yet)"
  elif git log -1 --format=%B | grep -q '^Proto-Break:'; then
    echo "buf breaking: a deliberate pre-release break, as this commit's Proto-Break line says"
  else
    echo "buf breaking: the API changed incompatibly; before the first release, say why with a Proto-Break: line"
    exit 1
  fi
else
  echo "buf breaking: skipped (no release tag and no previous commit in this clone)"
fi
