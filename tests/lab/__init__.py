"""End-to-end tests against the real 3-node Pacemaker lab (deploy/lab), marked `lab`.

They need root on Linux (network namespaces); conftest.py brings the lab up once per session
and restores it to healthy before every test.
"""
