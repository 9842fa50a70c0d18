"""The Functions app: builds the app and registers the blueprints. Nothing else runs at import."""

import azure.functions as func

from functions import doctor, events, resync, rotation, timers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (doctor.bp, events.bp, resync.bp, rotation.bp, timers.bp):
    app.register_functions(blueprint)
