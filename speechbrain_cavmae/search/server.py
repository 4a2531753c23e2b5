"""The local search page (``cavmae serve``): a Flask app over a :class:`VideoSearch`.

Routes
------
``GET /``                       the page (``static/index.html``; no external resources)
``GET /api/info``               index totals and settings
``POST /api/search``            multipart ``file`` (the query, deleted after the query),
                                ``modality`` (audio | visual), ``target``, ``top_k``,
                                ``level``, optional ``start`` / ``end``
``GET /api/similar/<segment>``  hits for an indexed moment (``modality``, ``target``...)
``GET /api/moment?path=&t=``    the indexed moment of a file at ``t`` seconds
``GET /media/<file id>``        an indexed file, with HTTP range requests (seeking)
``GET /thumb/<segment id>``     the JPEG thumbnail of a moment

Files are addressed by their id in the index, never by a path from the client: only
indexed files are served. Uploads are limited to ``max_upload_mb`` and written to a
temporary folder removed after the query.

Authors
 * speechbrain-cavmae contributors 2026
"""

import ipaddress
import logging
import os
import socket
import tempfile

from speechbrain_cavmae.search.store import LEVELS, MODALITIES

logger = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Query file extensions accepted by the upload.
UPLOAD_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".wav", ".flac", ".mp3",
               ".ogg", ".m4a", ".aac")


def is_loopback(host):
    """Whether ``host`` (a name or an address) resolves only to loopback addresses.

    Example
    -------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback
                               for i in infos)


def create_app(search, max_upload_mb=200):
    """The Flask app serving ``search`` (a :class:`~speechbrain_cavmae.search.VideoSearch`).

    The SQLite connection belongs to the thread that opened it, so the app serves one
    request at a time (``threaded=False`` in :func:`serve`)."""
    from flask import Flask, abort, jsonify, request, send_file, send_from_directory
    from werkzeug.exceptions import HTTPException

    from speechbrain_cavmae.data.errors import BadSampleError

    app = Flask(__name__, static_folder=STATIC, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    store = search.store

    def options(args):
        modality = args.get("modality", "audio")
        target = args.get("target") or modality
        level = args.get("level", "segment")
        if modality not in MODALITIES or target not in MODALITIES or level not in LEVELS:
            abort(400, "modality and target: audio or visual; level: segment or clip")
        try:
            top_k = min(max(int(args.get("top_k", 12)), 1), 200)
        except ValueError:
            abort(400, "top_k must be an integer")
        return modality, dict(target=target, top_k=top_k, level=level,
                              overlapping=args.get("overlapping") == "1")

    def hits_json(hits):
        rows, out = store.segments([h.segment_id for h in hits]), []
        for h in hits:
            has_thumb = rows.get(h.segment_id, (0,) * 5)[4]
            out.append({"path": h.path, "name": os.path.basename(h.path), "file": h.file_id,
                        "segment": h.segment_id, "start": h.start, "end": h.end,
                        "score": h.score, "media": f"/media/{h.file_id}",
                        "thumb": f"/thumb/{h.segment_id}" if has_thumb else None})
        return jsonify({"hits": out})

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify({"error": exc.description}), exc.code

    @app.get("/")
    def page():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/info")
    def info():
        settings = {k: v for k, v in store.settings().items() if not k.startswith("faiss:")}
        return jsonify({"counts": store.counts(), "settings": settings})

    @app.get("/media/<int:file_id>")
    def media(file_id):
        row = store.file(file_id)
        if row is None or not os.path.isfile(row[0]):
            abort(404, "no such indexed file")
        return send_file(row[0], conditional=True)  # honours Range: bytes=...

    @app.get("/thumb/<int:segment_id>")
    def thumb(segment_id):
        data = store.thumb(segment_id)
        if not data:
            abort(404, "no thumbnail")
        return data, 200, {"Content-Type": "image/jpeg", "Cache-Control": "max-age=3600"}

    @app.get("/api/moment")
    def moment():
        path = request.args.get("path", "")
        try:
            seconds = float(request.args.get("t", 0))
        except ValueError:
            abort(400, "t must be a number of seconds")
        if store.file_id(path) is None:
            abort(404, "not an indexed file")
        segment_id, start, end = store.segment_at(path, seconds)
        return jsonify({"segment": segment_id, "start": start, "end": end,
                        "file": store.file_id(path)})

    @app.get("/api/similar/<int:segment_id>")
    def similar(segment_id):
        modality, opts = options(request.args)
        if store.segment(segment_id) is None:
            abort(404, "no such moment")
        try:
            return hits_json(search.search_segment(segment_id, modality, **opts))
        except ValueError as exc:
            abort(400, str(exc))

    @app.post("/api/search")
    def upload_search():
        modality, opts = options(request.form)
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            abort(400, "no query file")
        ext = os.path.splitext(upload.filename)[1].lower()
        if ext not in UPLOAD_EXTS:
            abort(400, f"unsupported query file type {ext or '(none)'}")
        span = {}
        for key in ("start", "end"):
            if request.form.get(key):
                try:
                    span[key] = float(request.form[key])
                except ValueError:
                    abort(400, f"{key} must be a number of seconds")
        with tempfile.TemporaryDirectory(prefix="cavmae-query-") as tmp:
            path = os.path.join(tmp, "query" + ext)  # never the client's name
            upload.save(path)
            try:
                hits = search.search_file(path, modality, **span, **opts)
            except BadSampleError as exc:
                abort(400, f"{upload.filename}: {exc.reason}")
            except ValueError as exc:
                abort(400, str(exc).replace(path, upload.filename))
        return hits_json(hits)

    return app


def serve(search, host="127.0.0.1", port=8000, allow_remote=False, max_upload_mb=200):
    """Serve the page until interrupted.

    Raises
    ------
    PermissionError
        ``host`` is not a loopback address and ``allow_remote`` is False.
    """
    if not allow_remote and not is_loopback(host):
        raise PermissionError(
            f"--host {host} is reachable from other machines, which would expose every "
            "indexed file; bind to 127.0.0.1, or pass --allow_remote if you mean it")
    app = create_app(search, max_upload_mb)
    logger.warning("serving %s on http://%s:%d/", search.store.folder, host, port)
    app.run(host=host, port=port, threaded=False, use_reloader=False)
