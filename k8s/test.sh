#!/usr/bin/env bash
# Validates the Helm chart offline: helm lint, helm template with the default
# values and each k8s/values-*.yaml, golden files, and kubeconform -strict
# against JSON schemas generated from the Kubernetes OpenAPI spec in the
# k8s.io/kubernetes Go module. Every tool comes from the Go module proxy at a
# pinned version and is cached in ./.tools.
#
#   k8s/test.sh            # check
#   UPDATE=1 k8s/test.sh   # regenerate k8s/testdata/*.golden.yaml
set -euo pipefail

HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VERSION=v1.34.1 # schemas come from k8s.io/kubernetes@this
KUBE_VERSION=${KUBERNETES_VERSION#v}

cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
CHART=$ROOT/k8s/keygate
TESTDATA=$ROOT/k8s/testdata
SCHEMAS=$TOOLS/k8s-schemas-$KUBERNETES_VERSION
start=$(date +%s)
mkdir -p "$TOOLS"

# install NAME PACKAGE VERSION: go install once per version (stamp file).
install() {
	local name=$1 pkg=$2 version=$3
	if [[ -x $TOOLS/$name && "$(cat "$TOOLS/$name.version" 2>/dev/null)" == "$version" ]]; then
		return
	fi
	echo "==> installing $name $version"
	GOBIN=$TOOLS GOFLAGS=-mod=mod go install "$pkg@$version"
	echo "$version" >"$TOOLS/$name.version"
}
install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

if [[ ! -f $SCHEMAS/.done ]]; then
	echo "==> generating Kubernetes $KUBERNETES_VERSION JSON schemas"
	# Outside the main module, so go.mod/go.sum are left alone.
	dir=$(cd "$(mktemp -d)" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n $dir && -f $dir/api/openapi-spec/swagger.json ]] || { echo "no swagger.json in k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
	rm -rf "$SCHEMAS"
	go run ./k8s/internal/schemagen -in "$dir/api/openapi-spec/swagger.json" -out "$SCHEMAS"
	touch "$SCHEMAS/.done"
fi

helm() { "$TOOLS/helm" "$@"; }
kubeconform() {
	# ServiceMonitor is a CRD: no schema in the Kubernetes spec, so skipped.
	"$TOOLS/kubeconform" -strict -summary -skip ServiceMonitor \
		-schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

echo "==> helm lint"
helm lint --strict "$CHART" --kube-version "$KUBE_VERSION"
for v in "$ROOT"/k8s/values-*.yaml; do
	helm lint --strict "$CHART" --kube-version "$KUBE_VERSION" -f "$v"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
render() { # name [helm args...]
	local name=$1
	shift
	helm template keygate "$CHART" --namespace ai --kube-version "$KUBE_VERSION" "$@" >"$work/$name.yaml"
	echo "==> $name: kubeconform"
	kubeconform "$work/$name.yaml" || failed=1
	local golden=$TESTDATA/$name.golden.yaml
	if [[ ${UPDATE:-} == 1 ]]; then
		mkdir -p "$TESTDATA"
		cp "$work/$name.yaml" "$golden"
		echo "    updated ${golden#"$ROOT"/}"
	elif ! diff -u "$golden" "$work/$name.yaml"; then
		echo "FAIL: $name differs from ${golden#"$ROOT"/} (UPDATE=1 k8s/test.sh to accept)" >&2
		failed=1
	fi
}
render default
for v in "$ROOT"/k8s/values-*.yaml; do
	n=$(basename "$v" .yaml)
	render "$n" -f "$v"
done

# Things the chart must refuse.
if helm template keygate "$CHART" --kube-version "$KUBE_VERSION" --set mode=bogus >/dev/null 2>&1; then
	echo "FAIL: mode=bogus rendered" >&2
	failed=1
fi
if helm template keygate "$CHART" --kube-version "$KUBE_VERSION" --set nats.url= >/dev/null 2>&1; then
	echo "FAIL: empty nats.url rendered" >&2
	failed=1
fi
# The validation must have teeth: a field unknown to Kubernetes is an error.
sed 's/^  replicas: /  replicaz: /' "$work/default.yaml" >"$work/broken.yaml"
if "$TOOLS/kubeconform" -strict -skip ServiceMonitor -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$work/broken.yaml" >/dev/null; then
	echo "FAIL: kubeconform accepted an unknown field" >&2
	failed=1
fi

echo "==> k8s/test.sh took $(($(date +%s) - start))s"
if [[ $failed != 0 ]]; then
	echo "k8s: FAILED" >&2
	exit 1
fi
echo "k8s: ok"
