"""A small notes API in plain Flask, served by Nimbus as an HTTP service.

Nothing here knows about Nimbus: the same file runs under `flask run`, gunicorn or
any WSGI server. Deployed with the handler `app:app`, it answers at its function URL
(`/fn/{namespace}/{name}/...`), and `url_for` builds links under that prefix.
"""

import time

from flask import Flask, Response, abort, jsonify, request, url_for

app = Flask(__name__)

# One instance serves one request at a time and may be replaced at any moment: keep
# real data in a database. This list lives as long as the instance.
NOTES: list[dict[str, object]] = []


@app.get("/")
def index() -> Response:
    return jsonify(
        service="flask-notes",
        notes=url_for("list_notes"),
        countdown=url_for("countdown", n=3),
    )


@app.get("/notes")
def list_notes() -> Response:
    return jsonify(notes=NOTES)


@app.post("/notes")
def add_note() -> tuple[Response, int, dict[str, str]]:
    data = request.get_json(silent=True) or request.form
    text = data.get("text")
    if not text:
        abort(400, description="send a note's text as JSON {'text': ...} or a form field")
    note = {"id": len(NOTES) + 1, "text": text}
    NOTES.append(note)
    return jsonify(note), 201, {"Location": url_for("get_note", note_id=note["id"])}


@app.get("/notes/<int:note_id>")
def get_note(note_id: int) -> Response:
    for note in NOTES:
        if note["id"] == note_id:
            return jsonify(note)
    abort(404, description=f"no note {note_id}")


@app.get("/countdown/<int:n>")
def countdown(n: int) -> Response:
    """A streamed response: each line reaches the client as it is produced."""

    def lines():
        for i in range(n, 0, -1):
            yield f"{i}\n"
            time.sleep(0.5)
        yield "liftoff\n"

    return Response(lines(), mimetype="text/plain")
