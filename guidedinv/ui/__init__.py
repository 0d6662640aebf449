"""``guidedinv ui``: a local web page to paint a mask or strokes and restore or edit an image.

Design: no gradio. The standard library's :class:`http.server.ThreadingHTTPServer` serves one
static page (``static/index.html``, vanilla JavaScript: a canvas brush over the uploaded image paints
the mask or the strokes) and a small JSON API; one worker thread takes the jobs from a queue, so two
browser tabs are queued, never mixed. Why not gradio: it pulls about 40 packages (fastapi, uvicorn,
pandas, ...), takes seconds to start and its image-editor API changes between major versions; this
page has no runtime dependency beyond the package's own, starts in a fraction of a second and is
tested end to end in a headless Chromium (tests/test_ui_browser.py).

One implementation: a form becomes the same :class:`~guidedinv.app.request.Request` as the command
line (the restore and edit commands' own request builders, so the same checks and messages), and
the job runs the commands' own job sequence (:mod:`guidedinv.app.job`: prepare_job, load_models,
run_job, write_job_outputs, which writes through :mod:`guidedinv.app.images`).

Parts: :mod:`.form` (a submitted form -> a checked job, files saved in the job's folder),
:mod:`.jobs` (the queue, the worker, the model cache), :mod:`.server` (HTTP routes, ``serve``).
Importing this package imports no torch; the first form imports it.
"""
