"""clusterbot test suite."""
