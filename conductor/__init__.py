"""Conductor: the project package and the live-engagement app.

Importing it does nothing: the pure engine (`conductor.live.engine`) imports with numpy and pydantic
alone. The Celery application is loaded by the app's `ready()` in every Django process, and by
`celery -A conductor` in workers.
"""
