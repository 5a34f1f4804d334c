"""Slack transport: bolt AsyncApp, listeners, Web API client, HTTP and Socket Mode serving."""
