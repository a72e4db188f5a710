"""nfd-master: receives workers' labels and features, applies the label policy and
NodeFeatureRules, and patches Node objects. Only ``kube.py`` (and the modules that
use it at run time) import the Kubernetes client; everything else is pure."""
