{{/*
Names. Every object is "<fullname>-<suffix>": the fullname part is cut so that the whole name stays
within 63 characters and the suffix (which tells the objects apart) is never cut.
*/}}
{{- define "onething.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onething.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* (list $root "catalog-api") -> "<fullname cut to fit>-catalog-api" */}}
{{- define "onething.objectName" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $room := sub 62 (len $suffix) | int -}}
{{- printf "%s-%s" (include "onething.fullname" $root | trunc $room | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "onething.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A service's name in Kubernetes object names (DNS labels have no "_"): joint_review -> joint-review */}}
{{- define "onething.dnsName" -}}
{{- . | replace "_" "-" -}}
{{- end -}}

{{/* Selector labels: (list $root "catalog-api"); the component tells a release's Deployments apart. */}}
{{- define "onething.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "onething.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "onething.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "onething.chart" $root }}
{{ include "onething.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Values.image.tag | default $root.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/part-of: onething
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end -}}

{{- define "onething.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
What the code needs of each service, beside what the operator sets: the worker class (as in
services/common/registry.py), whether it keeps objects in S3 (its wiring builds Blobs) and whether
it calls another service with a service token of its own. charts/tests/test_chart.py keeps this in
step with the code.
*/}}
{{- define "onething.serviceFacts" -}}
catalog: {worker: "services.catalog.worker:CatalogWorker", objectStore: false, serviceToken: false}
intake: {worker: "services.intake.worker:IntakeWorker", objectStore: true, serviceToken: true}
joint_review: {worker: "services.joint_review.worker:JointReviewWorker", objectStore: true, serviceToken: false}
elicense: {worker: "services.elicense.worker:ElicenseWorker", objectStore: true, serviceToken: false}
delivery: {worker: "services.delivery.worker:DeliveryWorker", objectStore: true, serviceToken: false}
evaluation: {worker: "services.evaluation.worker:EvaluationWorker", objectStore: false, serviceToken: false}
{{- end -}}

{{/*
The ops endpoint every process serves (services/common/ops.py): GET /metrics (Prometheus), /healthz
(liveness) and /readyz (readiness: its database, broker and S3 answer). One port for every pod, named
`ops`; the process is named after its pod (the `process` label of its metrics).
*/}}
{{- define "onething.opsPort" -}}8080{{- end -}}

{{- define "onething.opsEnv" -}}
- name: ONETHING_OPS_PORT
  value: {{ include "onething.opsPort" . | quote }}
- name: ONETHING_OPS_BIND_HOST
  value: "0.0.0.0"
- name: ONETHING_PROCESS_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- end -}}

{{/* Pod annotations: Prometheus's kubernetes_sd scrape configuration finds every pod's /metrics by them. */}}
{{- define "onething.opsAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "onething.opsPort" . | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "onething.opsContainerPort" -}}
- {name: ops, containerPort: {{ include "onething.opsPort" . }}, protocol: TCP}
{{- end -}}

{{/* A worker's or desk's probes: ready while its dependencies answer, alive while it runs. */}}
{{- define "onething.opsProbes" -}}
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /healthz, port: ops}
  periodSeconds: 20
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* Where the processes write their span files (ONETHING_VAR_DIR): an emptyDir, the root filesystem is read-only. */}}
{{- define "onething.varDir" -}}/var/lib/onething{{- end -}}

{{- define "onething.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "onething.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
An AMQP login built from parts: (list $root "svc-catalog"). The password comes from the env var
AMQP_PASSWORD (a secretKeyRef listed before it) by Kubernetes' $(VAR) expansion, so it is never in
the manifest; it must be URL-safe (letters, digits, "-", "_", ".", "~").
*/}}
{{- define "onething.amqpUri" -}}
{{- $root := index . 0 -}}
{{- $b := $root.Values.broker -}}
{{- printf "%s://%s:$(AMQP_PASSWORD)@%s:%d/%s" (ternary "amqps" "amqp" $b.tls) (index . 1) $b.host (int $b.port) $b.vhost -}}
{{- end -}}

{{/* What every process of the site reads: profile, region, where to write, tracing. */}}
{{- define "onething.siteEnv" -}}
- name: ONETHING_PROFILE
  value: {{ .Values.profile | quote }}
- name: ONETHING_REGION
  value: {{ .Values.site.region | quote }}
{{- with .Values.site.servedRegions }}
- name: ONETHING_SERVED_REGIONS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.federation.upstreams }}
{{- /* a city takes its province's package versions (services/catalog) */}}
- name: ONETHING_CATALOG_UPSTREAM
  value: {{ (first .).site | quote }}
{{- end }}
- name: ONETHING_VAR_DIR
  value: {{ include "onething.varDir" . }}
- name: ONETHING_INFRA_DIR
  value: {{ include "onething.varDir" . }}
{{- if .Values.otlp.endpoint }}
{{- /* to the collector only: a pod's span folder is not kept */}}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlp.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otlp.protocol | quote }}
{{- end }}
{{- end -}}

{{/*
The environment of a service's api or worker: (dict "root" $ "service" "catalog" "role" "api").
Its own broker user, its own MongoDB URI, its own S3 identity (only a service that keeps objects),
where the other services' apis are, the identity provider's public keys.
*/}}
{{- define "onething.serviceEnv" -}}
{{- $root := .root -}}
{{- $name := .service -}}
{{- $v := $root.Values -}}
{{- $svc := index $v.services $name -}}
{{- $facts := index (include "onething.serviceFacts" $root | fromYaml) $name -}}
{{- $keys := $v.credentialKeys -}}
{{ include "onething.siteEnv" $root }}
{{ include "onething.opsEnv" $root }}
- name: AMQP_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $svc.credentialsSecret | quote }}, key: {{ $keys.amqpPassword | quote }}}
- name: ONETHING_AMQP_URI
  value: {{ include "onething.amqpUri" (list $root (printf "svc-%s" $name)) | quote }}
- name: ONETHING_MONGO_URI
  valueFrom:
    secretKeyRef: {name: {{ $svc.credentialsSecret | quote }}, key: {{ $keys.mongoUri | quote }}}
- name: ONETHING_DB_PREFIX
  value: {{ $v.mongo.dbPrefix | quote }}
{{- if $facts.objectStore }}
- name: ONETHING_S3_ENDPOINT
  value: {{ $v.s3.endpoint | quote }}
- name: ONETHING_S3_SECURE
  value: {{ ternary "1" "0" $v.s3.secure | quote }}
- name: ONETHING_BUCKET_PREFIX
  value: {{ $v.s3.bucketPrefix | quote }}
- name: ONETHING_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $svc.credentialsSecret | quote }}, key: {{ $keys.s3AccessKey | quote }}}
- name: ONETHING_S3_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ $svc.credentialsSecret | quote }}, key: {{ $keys.s3SecretKey | quote }}}
{{- end }}
{{- range $other, $o := $v.services }}
- name: ONETHING_{{ upper $other }}_HOST
  value: {{ include "onething.objectName" (list $root (printf "%s-api" (include "onething.dnsName" $other))) | quote }}
- name: ONETHING_{{ upper $other }}_PORT
  value: {{ $o.api.port | quote }}
{{- end }}
- name: ONETHING_AUTH_JWKS_FILE
  value: /etc/onething/idp/jwks.json
- name: ONETHING_AUTH_ISSUER
  value: {{ $v.auth.issuer | quote }}
- name: ONETHING_AUTH_AUDIENCE
  value: {{ $v.auth.audience | quote }}
{{- if and (eq .role "api") $facts.serviceToken }}
- name: ONETHING_SERVICE_TOKEN_FILE
  value: /etc/onething/service-token/token
{{- end }}
{{- if eq .role "api" }}
- name: ONETHING_GRPC_BIND_HOST
  value: "0.0.0.0"
{{- if $v.grpcTls.enabled }}
- name: ONETHING_GRPC_TLS_CERT_FILE
  value: /etc/onething/grpc-tls/tls.crt
- name: ONETHING_GRPC_TLS_KEY_FILE
  value: /etc/onething/grpc-tls/tls.key
- name: ONETHING_GRPC_TLS_CA_FILE
  value: /etc/onething/grpc-tls/ca.crt
- name: ONETHING_GRPC_TLS
  value: "1"
{{- with $v.grpcTls.serverName }}
- name: ONETHING_GRPC_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.grpcTls.clientAuth }}
- name: ONETHING_GRPC_TLS_CLIENT_AUTH
  value: "1"
- name: ONETHING_GRPC_TLS_CLIENT_CERT_FILE
  value: /etc/onething/grpc-tls/tls.crt
- name: ONETHING_GRPC_TLS_CLIENT_KEY_FILE
  value: /etc/onething/grpc-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := $v.settings }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Volumes of a service's pod: the span folder, the identity provider's keys, TLS and the service token (api). */}}
{{- define "onething.serviceVolumes" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $facts := index (include "onething.serviceFacts" $root | fromYaml) .service -}}
- name: var
  emptyDir:
    sizeLimit: {{ $v.varSizeLimit }}
- name: idp
  configMap:
    name: {{ $v.auth.jwksConfigMap.name | quote }}
    items:
      - {key: {{ $v.auth.jwksConfigMap.key | quote }}, path: jwks.json}
{{- if eq .role "api" }}
{{- if $v.grpcTls.enabled }}
- name: grpc-tls
  secret:
    secretName: {{ $v.grpcTls.secretName | quote }}
    defaultMode: 0440
{{- end }}
{{- if $facts.serviceToken }}
- name: service-token
  secret:
    secretName: {{ (index $v.services .service).credentialsSecret | quote }}
    defaultMode: 0440
    items:
      - {key: {{ $v.credentialKeys.serviceToken | quote }}, path: token}
{{- end }}
{{- end }}
{{- end -}}

{{- define "onething.serviceMounts" -}}
{{- $v := .root.Values -}}
{{- $facts := index (include "onething.serviceFacts" .root | fromYaml) .service -}}
- {name: var, mountPath: {{ include "onething.varDir" .root }}}
- {name: idp, mountPath: /etc/onething/idp, readOnly: true}
{{- if eq .role "api" }}
{{- if $v.grpcTls.enabled }}
- {name: grpc-tls, mountPath: /etc/onething/grpc-tls, readOnly: true}
{{- end }}
{{- if $facts.serviceToken }}
- {name: service-token, mountPath: /etc/onething/service-token, readOnly: true}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The api's probe. Without TLS: the kubelet's own gRPC probe (grpc.health.v1). With TLS: the kubelet's
gRPC probe speaks plaintext only, so the pod asks itself through the project's client channel (the
same CA, server name and client certificate its calls use).
*/}}
{{- define "onething.apiProbe" -}}
{{- $root := .root -}}
{{- if $root.Values.grpcTls.enabled -}}
exec:
  command:
    - env
    - ONETHING_GRPC_TLS_SERVER_NAME={{ $root.Values.grpcTls.serverName | default (include "onething.objectName" (list $root (printf "%s-api" (include "onething.dnsName" .service)))) }}
    - python
    - -c
    - >-
      import sys;
      from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g;
      from services.common.grpc_client import channel;
      reply = g.HealthStub(channel("127.0.0.1:{{ .port }}")).Check(h.HealthCheckRequest(), timeout=4);
      sys.exit(0 if reply.status == h.HealthCheckResponse.SERVING else 1)
{{- else -}}
grpc:
  port: {{ .port }}
{{- end }}
{{- end -}}
