#!/usr/bin/env bash
# Validates the Helm chart offline: helm lint, helm template with the default
# values and each k8s/values-*.yaml, golden files (of the manifests and of
# NOTES), kubeconform -strict against JSON schemas generated from the
# Kubernetes OpenAPI spec in the k8s.io/kubernetes Go module, and values
# the chart must refuse (values.schema.json and templates/validate.yaml).
# Every tool comes from the Go module proxy at a pinned version and is
# cached in ./.tools.
#
#   k8s/test.sh            # check
#   UPDATE=1 k8s/test.sh   # regenerate k8s/testdata/*.golden.*
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
# golden NAME FILE: FILE is the golden file NAME (UPDATE=1 writes it).
golden() {
	local golden=$TESTDATA/$1
	if [[ ${UPDATE:-} == 1 ]]; then
		mkdir -p "$TESTDATA"
		cp "$2" "$golden"
		echo "    updated ${golden#"$ROOT"/}"
	elif ! diff -u "$golden" "$2"; then
		echo "FAIL: $1 differs from ${golden#"$ROOT"/} (UPDATE=1 k8s/test.sh to accept)" >&2
		failed=1
	fi
}
render() { # name [helm args...]
	local name=$1
	shift
	helm template keygate "$CHART" --namespace ai --kube-version "$KUBE_VERSION" "$@" >"$work/$name.yaml"
	echo "==> $name: kubeconform"
	kubeconform "$work/$name.yaml" || failed=1
	golden "$name.golden.yaml" "$work/$name.yaml"
}
render default
for v in "$ROOT"/k8s/values-*.yaml; do
	n=$(basename "$v" .yaml)
	render "$n" -f "$v"
done
# The admin API in mode sidecars: the ConfigMap, and NOTES (below).
render sidecars-api -f "$ROOT/k8s/values-sidecars.yaml" -f "$ROOT/k8s/values-api.yaml"

# NOTES, which helm template does not print: rendered by a copy of the
# chart whose one template is NOTES.txt as a YAML block.
notes_chart=$work/notes/keygate
mkdir -p "$work/notes"
cp -r "$CHART" "$notes_chart"
mv "$notes_chart/templates/NOTES.txt" "$notes_chart/files/NOTES.txt"
find "$notes_chart/templates" -name '*.yaml' -delete
printf '%s\n' 'notes: |' '{{- tpl (.Files.Get "files/NOTES.txt") . | nindent 2 }}' >"$notes_chart/templates/notes.yaml"
notes() { # name [helm args...]
	local name=$1
	shift
	echo "==> $name: NOTES"
	helm template keygate "$notes_chart" --namespace ai --kube-version "$KUBE_VERSION" "$@" |
		sed -e '1,/^notes: |$/d' -e 's/^  //' >"$work/$name.notes.txt"
	golden "$name.notes.golden.txt" "$work/$name.notes.txt"
}
notes default
notes values-api -f "$ROOT/k8s/values-api.yaml"
notes values-sidecars -f "$ROOT/k8s/values-sidecars.yaml"
notes sidecars-api -f "$ROOT/k8s/values-sidecars.yaml" -f "$ROOT/k8s/values-api.yaml"

# refuse NAME WANT [helm args...]: the chart must refuse to render, with
# an error that says WANT.
refuse() {
	local name=$1 want=$2
	shift 2
	local out
	if out=$(helm template keygate "$CHART" --kube-version "$KUBE_VERSION" "$@" 2>&1 >/dev/null); then
		echo "FAIL: refuse $name: rendered, want an error saying: $want" >&2
		failed=1
	elif [[ $out != *"$want"* ]]; then
		echo "FAIL: refuse $name: the error does not say \"$want\":" >&2
		echo "$out" >&2
		failed=1
	fi
}
echo "==> refusals"
refuse "unknown mode" "value must be one of 'app', 'sidecars'" --set mode=bogus
refuse "empty nats.url" "nats.url is required" --set nats.url=
refuse "a misspelt value" "additional properties 'enabeld' not allowed" --set keygate.api.enabeld=true
refuse "an unknown top-level value" "additional properties 'replicas' not allowed" --set replicas=3
refuse "a number as a string" "at '/replicaCount': got string, want integer" --set replicaCount=two
refuse "a port out of range" "at '/keygate/api/port': maximum" --set keygate.api.port=70000
refuse "an unknown admin token scope" "value must be one of 'read', 'keys', 'balances'" --set 'keygate.api.adminToken.scopes={admin}'
refuse "api without a TLS Secret" "keygate.api.tls.existingSecret is required" --set keygate.api.enabled=true
refuse "api without networkPolicy.from" "keygate.api.networkPolicy.from must list" \
	--set keygate.api.enabled=true --set keygate.api.tls.existingSecret=keygate-api-tls
refuse "api on the admin port" "keygate.api.port 9090 is keygate.adminPort too" \
	-f "$ROOT/k8s/values-api.yaml" --set keygate.api.port=9090
refuse "an empty NetworkPolicyPeer" "minProperties" -f "$ROOT/k8s/values-api.yaml" --set-json 'keygate.api.networkPolicy.from=[{}]'
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
