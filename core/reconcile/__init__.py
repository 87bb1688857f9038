"""The reconciler: the last net under the flow chains' rollbacks and the GC jobs."""
