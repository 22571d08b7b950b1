"""The baseline of bench_write_path.py (issue 11): the least a FastAPI app can do per write.

`POST /v1/notes` validates a small JSON body with pydantic and does one INSERT + COMMIT through
SQLAlchemy async on BASELINE_DATABASE_URL (the table is created at start-up). Run by uvicorn with
uvloop and httptools, as the services are:

    BASELINE_DATABASE_URL=sqlite+aiosqlite:///x.db uvicorn bench._baseline_app:create_app --factory
"""
from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import create_async_engine

metadata = MetaData()
notes = Table("notes", metadata, Column("id", String(36), primary_key=True),
              Column("email", String(255), nullable=False), Column("text", String(2000), nullable=False))


class NoteIn(BaseModel):
    email: str = Field(min_length=3, max_length=255)
    text: str = Field(max_length=2000)


def create_app() -> FastAPI:
    url = os.environ["BASELINE_DATABASE_URL"]
    engine = create_async_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with engine.begin() as connection:
            if url.startswith("sqlite"):
                await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            await connection.run_sync(metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/notes", status_code=201)
    async def create_note(note: NoteIn) -> dict:
        note_id = str(uuid.uuid4())
        async with engine.connect() as connection:
            await connection.execute(insert(notes).values(id=note_id, email=note.email, text=note.text))
            await connection.commit()
        return {"id": note_id}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app
