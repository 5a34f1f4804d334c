"""clusterbot: Pacemaker/Corosync status, alerts and approved remediation in Slack."""

__version__ = "0.1.0"
