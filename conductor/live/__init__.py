"""The live-engagement app (app label `conductor`): events and sessions, and the loop
ingest -> tick -> decide -> deliver -> measure, with its pages, API, sockets and simulator.

Importing it does nothing: its pure engine (`conductor.live.engine`) imports with numpy and
pydantic alone.
"""
