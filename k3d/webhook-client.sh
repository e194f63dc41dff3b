#!/bin/sh
# The client certificate the k3d cluster's API server presents to admission webhooks, so
# that the contract service's webhook (which accepts no other caller) can tell it from
# anyone else. `make cluster` runs it before creating the cluster:
#
#   sh k3d/webhook-client.sh DIR
#
# DIR gets (once; kept afterwards, so the chart and the cluster keep agreeing):
#   ca.crt, ca.key          a CA of its own; the chart's webhook trusts ca.crt
#                           (--set-file contract.webhook.clientCA.pem=DIR/ca.crt)
#   client.crt, client.key  the API server's certificate, CN kube-apiserver-webhook-client
# and (every time) the files k3d/cluster.yaml mounts into the K3s server at
# /etc/modelserve/webhook-client:
#   kubeconfig              the credentials for every webhook (user "*")
#   admission.yaml          the AdmissionConfiguration naming that kubeconfig
#                           (--kube-apiserver-arg=admission-control-config-file=...)
set -eu

dir=${1:?usage: sh k3d/webhook-client.sh DIR}
inside=/etc/modelserve/webhook-client
name=kube-apiserver-webhook-client
days=3650

mkdir -p "$dir"
umask 077
if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days "$days" \
        -subj "/CN=modelserve-webhook-client-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    rm -f "$dir/client.crt"
fi
if [ ! -s "$dir/client.crt" ] || [ ! -s "$dir/client.key" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" \
        -keyout "$dir/client.key" -out "$dir/client.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
        >"$dir/client.ext"
    openssl x509 -req -days "$days" -in "$dir/client.csr" -CA "$dir/ca.crt" \
        -CAkey "$dir/ca.key" -CAcreateserial -extfile "$dir/client.ext" \
        -out "$dir/client.crt" 2>/dev/null
    rm -f "$dir/client.csr" "$dir/client.ext" "$dir/ca.srl"
fi
# The K3s server runs as root and reads these where cluster.yaml mounts them.
chmod 0644 "$dir/ca.crt" "$dir/client.crt"

cat >"$dir/kubeconfig" <<KUBECONFIG
# The API server's credentials for admission webhooks: user "*" matches every webhook.
apiVersion: v1
kind: Config
users:
  - name: "*"
    user:
      client-certificate: $inside/client.crt
      client-key: $inside/client.key
KUBECONFIG

cat >"$dir/admission.yaml" <<ADMISSION
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $inside/kubeconfig
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: $inside/kubeconfig
ADMISSION
echo "The API server's webhook client certificate is in $dir (CA: $dir/ca.crt)."
