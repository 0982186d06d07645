"""The web page of ``saliency serve``: a Flask app over a :class:`~saliency.segmentation.predict.Detector`,
served by waitress.

``GET /`` is the page (``static/index.html``, with its script and style beside it: no CDN, it works
offline). The page POSTs the image as multipart form field ``image`` to ``/predict`` and gets back
JSON: the image's ``width`` and ``height`` and its ``outputs``, each a format of
:data:`~saliency.segmentation.outputs.FORMATS` with a label and a PNG data URL, made from the one
8-bit map ``saliency predict`` would save. ``GET /settings`` tells the page the upload limit and the
model's settings. Every error, bad uploads included, is JSON ``{"error": "one line"}`` with a 4xx
(or 500) status, and the server keeps serving.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.exceptions import HTTPException, InternalServerError

from saliency.errors import UserError
from saliency.images import decode_image, encode_png
from saliency.segmentation.outputs import render

if TYPE_CHECKING:
    from saliency.segmentation.predict import Detector

log = logging.getLogger("saliency")

# What the page shows, in order: (format, label). Each is downloadable as STEM-FORMAT.png.
SHOWN = (("probability", "Saliency map"), ("mask", "Mask"), ("cutout", "Cut-out"))
UPLOAD_FIELD = "image"  # the multipart field the page sends
FORM_OVERHEAD = 64 * 1024  # room in a request for the multipart headers around a file of the largest size taken
MEGABYTE = 1 << 20  # --max-upload-mb's unit
# Headers of every answer: the page loads nothing from elsewhere and is never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def size_text(size: int) -> str:
    return f"{round(size / MEGABYTE, 2):g} MB"


def create_app(detector: "Detector", max_upload_bytes: int) -> flask.Flask:
    """The app: the page, ``/predict`` and ``/settings``. Uploads over ``max_upload_bytes`` answer 413."""
    app = flask.Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + FORM_OVERHEAD  # Flask answers 413 beyond (below)
    lock = threading.Lock()  # a torch model is not safe to run from several threads at once
    too_large = (f"the file is larger than the {size_text(max_upload_bytes)} this server takes; pick a smaller "
                 f"image (or restart saliency serve with a larger --max-upload-mb)")

    def error(status: int, message: str) -> tuple[flask.Response, int]:
        return flask.jsonify(error=one_line(message)), status

    @app.after_request
    def secure(response: flask.Response) -> flask.Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exception: HTTPException) -> tuple[flask.Response, int]:
        status = exception.code or 500
        messages = {404: f"{flask.request.path} not found; the page is at /",
                    405: f"{flask.request.method} is not answered at {flask.request.path}",
                    413: too_large}
        return error(status, messages.get(status, exception.description or exception.name))

    @app.errorhandler(InternalServerError)
    def internal_error(exception: InternalServerError) -> tuple[flask.Response, int]:
        # Flask has logged the traceback already.
        return error(500, "the server failed on this image (its log has the details); try another image")

    @app.get("/")
    def page() -> flask.Response:
        return app.send_static_file("index.html")

    @app.get("/settings")
    def settings() -> flask.Response:
        record = detector.record()
        return flask.jsonify(max_upload_bytes=max_upload_bytes, checkpoint_sha256=record["checkpoint_sha256"],
                             inference=record["inference"], refine=record["refine"]["name"])

    @app.post("/predict")
    def predict() -> Any:
        upload = flask.request.files.get(UPLOAD_FIELD)
        if upload is None or not upload.filename:
            return error(400, f"no image in the request; send one as the multipart form field {UPLOAD_FIELD!r}")
        name = one_line(upload.filename)
        data = upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return error(413, f"{name}: {too_large}")
        if not data:
            return error(400, f"{name} is empty; pick an image file")
        try:
            image = decode_image(data, name)
        except UserError:
            return error(415, f"{name} is not an image this server can read; pick a complete JPEG, PNG or TIFF file")
        try:
            with lock:
                probability = detector.saliency(image)[1]
        except UserError as failure:
            return error(422, f"{name}: {failure}")
        outputs = [{"format": format, "label": label, "url": png_data_url(render(format, image, probability))}
                   for format, label in SHOWN]
        return flask.jsonify(width=int(image.shape[1]), height=int(image.shape[0]), outputs=outputs)

    return app


def png_data_url(array: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(array)).decode("ascii")


def serve(detector: "Detector", host: str, port: int, max_upload_bytes: int, threads: int = 4) -> None:
    """Serve the page with waitress until interrupted; a port that cannot be bound is one line."""
    from waitress import create_server

    app = create_app(detector, max_upload_bytes)
    try:
        # waitress reads a whole request before the app sees it: a little more than Flask's limit, so
        # that a file just over the limit gets the page's JSON answer rather than a dropped connection.
        server = create_server(app, host=host, port=port, threads=threads,
                               max_request_body_size=2 * (max_upload_bytes + FORM_OVERHEAD))
    except OSError as failure:
        raise UserError(f"cannot listen on {host}:{port} ({failure.strerror or failure}); pick another --port "
                        f"or stop what uses it") from None
    if hasattr(server, "effective_port"):
        where = f"http://{wrap_host(str(server.effective_host))}:{server.effective_port}/"
        print(f"serving on {where} (Ctrl-C stops)", flush=True)
    else:  # several addresses (a host name with IPv4 and IPv6 addresses)
        server.print_listen("serving on http://{}:{}/ (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the page has no login: anyone who reaches %s can use it", host)
    try:
        server.run()  # until Ctrl-C, which waitress catches
    finally:
        server.close()
    print("stopped", flush=True)


def wrap_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
