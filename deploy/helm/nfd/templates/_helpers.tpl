{{/* Labels on every object; selectors use only name + component, as the kustomize base. */}}
{{- define "nfd.labels" -}}
app.kubernetes.io/name: node-feature-discovery
app.kubernetes.io/part-of: node-feature-discovery
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "nfd.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Read-only host paths of the worker: volume name, host path, mount path, type. The
worker pod spec and the OpenShift SCC are both generated from this one list. */}}
{{- define "nfd.hostMounts" -}}
- {name: host-sys, path: /sys, mountPath: /host-sys}
- {name: host-proc, path: /proc, mountPath: /host-proc}
- {name: host-os-release, path: /etc/os-release, mountPath: /host-etc/os-release}
- {name: host-boot, path: /boot, mountPath: /host-boot}
- {name: host-lib-modules, path: /lib/modules, mountPath: /host-lib/modules}
- {name: host-usr-lib, path: /usr/lib, mountPath: /host-usr/lib}
- {name: host-usr-share, path: /usr/share, mountPath: /host-usr/share}
- {name: features-d, path: /etc/kubernetes/node-feature-discovery/features.d, mountPath: /etc/kubernetes/node-feature-discovery/features.d, type: DirectoryOrCreate}
- {name: source-d, path: /etc/kubernetes/node-feature-discovery/source.d, mountPath: /etc/kubernetes/node-feature-discovery/source.d, type: DirectoryOrCreate}
- {name: custom-d, path: /etc/kubernetes/node-feature-discovery/custom.d, mountPath: /etc/kubernetes/node-feature-discovery/custom.d, type: DirectoryOrCreate}
{{- end -}}

{{- define "nfd.podSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.openshift.enabled }}
runAsUser: 65534
runAsGroup: 65534
{{- end }}
{{- /* OpenShift's restricted-v2 SCC assigns fsGroup from the namespace's range itself. */}}
{{- if and .Values.tls.enabled (not .Values.openshift.enabled) }}
fsGroup: 65534
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "nfd.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}
