"""clusterbot: Pacemaker/Corosync status, alerts and approved remediation in Slack."""

import os

__version__ = "0.1.0"

# clusterbot uses no pydantic plugins, and wants none: a plugin installed next to it would see
# every validated setting, Slack tokens included. Finding them also costs every cold start an
# entry-point scan of site-packages (20-100 ms measured). An explicit setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
