{{/*
Production settings shared by the gateway, contract, download and jobs services:
how many pods a component runs, its PodDisruptionBudget's problem (if any) and its
topology spread.
*/}}

{{/* The fewest pods a component runs: (list . "gateway"). The gateway's autoscaler
may go down to its minReplicas, so that is what a disruption budget must allow for. */}}
{{- define "modelserve.minPods" -}}
{{- $root := index . 0 }}
{{- $values := index $root.Values (index . 1) }}
{{- if and (eq (index . 1) "gateway") $values.autoscaling.enabled }}
{{- $values.autoscaling.minReplicas }}
{{- else }}
{{- $values.replicas }}
{{- end }}
{{- end }}

{{/* The most pods a component runs: (list . "gateway"); spreading is worth it above one. */}}
{{- define "modelserve.maxPods" -}}
{{- $root := index . 0 }}
{{- $values := index $root.Values (index . 1) }}
{{- if and (eq (index . 1) "gateway") $values.autoscaling.enabled }}
{{- $values.autoscaling.maxReplicas }}
{{- else }}
{{- $values.replicas }}
{{- end }}
{{- end }}

{{/* Why a component's PodDisruptionBudget is left out, or nothing when it can be
satisfied: (list . "gateway"). A budget that allows no disruption blocks every drain of
its pods' nodes, so the chart does not make it. One that sets both or neither of
minAvailable and maxUnavailable is a mistake in the values: rendering fails. */}}
{{- define "modelserve.pdbProblem" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $budget := (index $root.Values $component).podDisruptionBudget }}
{{- $pods := int (include "modelserve.minPods" .) }}
{{- $min := $budget.minAvailable }}
{{- $max := $budget.maxUnavailable }}
{{- if eq (kindIs "invalid" $min) (kindIs "invalid" $max) }}
{{- fail (printf "%s.podDisruptionBudget: set one of minAvailable and maxUnavailable, not both or neither" $component) }}
{{- end }}
{{- if not (kindIs "invalid" $min) }}
{{- $needed := 0 }}
{{- if kindIs "string" $min }}
{{- $needed = int (ceil (divf (mulf $pods (trimSuffix "%" $min | float64)) 100)) }}
{{- else }}
{{- $needed = int $min }}
{{- end }}
{{- if ge $needed $pods }}
{{- printf "%s.podDisruptionBudget.minAvailable %v of %d pods allows no disruption: no PodDisruptionBudget made (it would block node drains); lower it or add replicas." $component $min $pods }}
{{- end }}
{{- else if eq (trimSuffix "%" (toString $max)) "0" }}
{{- printf "%s.podDisruptionBudget.maxUnavailable %v allows no disruption: no PodDisruptionBudget made (it would block node drains)." $component $max }}
{{- end }}
{{- end }}

{{/* A pod spec's topologySpreadConstraints: (list . "gateway" $values). The component's
own constraints when it has any (each without a labelSelector gets the component's);
otherwise the chart's, over each of topologySpread.topologyKeys, when the component may
run more than one pod. matchLabelKeys keeps a rolling update's new pods spread among
themselves rather than against the old ones. */}}
{{- define "modelserve.topologySpread" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $values := index . 2 }}
{{- $selector := dict "matchLabels" (include "modelserve.selectorLabels" (list $root $component) | fromYaml) }}
{{- $constraints := list }}
{{- if $values.topologySpreadConstraints }}
{{- range $values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" $selector }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
{{- else if and $root.Values.topologySpread.enabled (gt (int (include "modelserve.maxPods" (list $root $component))) 1) }}
{{- $spread := $root.Values.topologySpread }}
{{- range $spread.topologyKeys }}
{{- $constraints = append $constraints (dict
  "maxSkew" $spread.maxSkew
  "topologyKey" .
  "whenUnsatisfiable" $spread.whenUnsatisfiable
  "labelSelector" $selector
  "matchLabelKeys" (list "pod-template-hash")) }}
{{- end }}
{{- end }}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
