"""The only layer besides kopf that talks to the Kubernetes API."""
