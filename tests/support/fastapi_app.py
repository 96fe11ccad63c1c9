"""A small FastAPI + SQLAlchemy 2 API with planted N+1s, sync and async, as an application would write it.

``/api/posts`` is a sync endpoint (FastAPI runs it in its thread pool) on a ``Session``: each
post's author is a lazy load. ``/api/feed`` is async on an ``AsyncSession``: each author is
awaited through ``awaitable_attrs``, one lazy load per row run in SQLAlchemy's greenlet.
``/api/posts/eager`` is their async twin with ``selectinload`` (two queries whatever the number
of rows); ``/api/posts/{post_id}`` reads one post and its author. Knows nothing of flowscope.

    app = create_app("/tmp/blog.db", authors=12)
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.ext.asyncio import AsyncAttrs, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship()


def serialize(post: Post) -> dict:
    return {"id": post.id, "title": post.title, "author": post.author.name}   # the sync lazy load


async def serialize_async(post: Post) -> dict:
    author = await post.awaitable_attrs.author                                # the async lazy load
    return {"id": post.id, "title": post.title, "author": author.name}


def create_app(database_path: str, authors: int = 12) -> FastAPI:
    engine = create_engine(f"sqlite:///{database_path}")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        people = [Author(name=f"author {i}") for i in range(authors)]
        session.add_all(Post(title=f"post {i}", author=person) for i, person in enumerate(people))
        session.commit()
    async_session = async_sessionmaker(create_async_engine(f"sqlite+aiosqlite:///{database_path}"))

    app = FastAPI()

    @app.get("/api/posts")
    def list_posts() -> list[dict]:
        with Session(engine) as session:
            return [serialize(post) for post in session.scalars(select(Post).order_by(Post.id))]

    @app.get("/api/feed")
    async def feed() -> dict:
        async with async_session() as session:
            posts = (await session.scalars(select(Post).order_by(Post.id.desc()))).all()
            return {"items": [await serialize_async(post) for post in posts]}

    @app.get("/api/posts/eager")
    async def list_posts_eager() -> list[dict]:
        async with async_session() as session:
            query = select(Post).options(selectinload(Post.author)).order_by(Post.id)
            return [serialize(post) for post in await session.scalars(query)]

    @app.get("/api/posts/{post_id}")
    async def get_post(post_id: int) -> dict:
        async with async_session() as session:
            return await serialize_async(await session.get(Post, post_id))

    return app
