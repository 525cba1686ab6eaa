"""Azure Function (Python v2 programming model) serving the drift verdict service.

All requests under /api are handed to the ASGI app of ``stat_guard.service``; the
function key is checked by the platform (AuthLevel.FUNCTION) and again by the app when
``STAT_GUARD_FUNCTION_KEY`` is set.
"""

import azure.functions as func

from stat_guard.service import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.FUNCTION)
