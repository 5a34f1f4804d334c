"""In-process fakes of external services (Slack) for integration tests."""
