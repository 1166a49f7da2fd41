#!/usr/bin/env bash
# Validates every Kubernetes manifest under deploy/ against the API schemas of a pinned
# Kubernetes version (kubernetes-validate, strict: unknown fields are errors), lints
# them (yamllint), and parses deploy/Dockerfile with Docker's own parser. The tools are
# installed at pinned versions into a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.34
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
DOCKERFILE_VERSION=3.4.0

venv=target/manifest-tools
stamp="$venv/.versions-$KUBERNETES_VALIDATE_VERSION-$YAMLLINT_VERSION-$DOCKERFILE_VERSION"
if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "yamllint==$YAMLLINT_VERSION" \
        "dockerfile==$DOCKERFILE_VERSION"
    touch "$stamp"
fi
manifests=(deploy/kubernetes/*.yaml deploy/examples/*.yaml)
"$venv/bin/yamllint" --strict "${manifests[@]}"
"$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
"$venv/bin/python" - deploy/Dockerfile <<'PY'
import sys, dockerfile
cmds = dockerfile.parse_file(sys.argv[1])
stages = [c for c in cmds if c.cmd.upper() == "FROM"]
assert len(stages) == 2, f"expected a build and a runtime stage, got {len(stages)}"
entry = [c for c in cmds if c.cmd.upper() == "ENTRYPOINT"]
assert entry and entry[-1].value[0] == "/usr/local/bin/emptydirfs", entry
print(f"{sys.argv[1]}: {len(cmds)} instructions parse")
PY
echo "manifests: valid against Kubernetes $K8S_VERSION and lint-clean: ${manifests[*]}"
