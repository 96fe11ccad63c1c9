"""A small Flask + SQLAlchemy 2 API with a planted N+1, as an application would write it.

Two list endpoints serialize each post's author (a lazy many-to-one): every page lazy-loads one
author per row. ``/api/posts/eager`` is their twin with ``selectinload`` (two queries whatever
the number of rows); ``/api/posts/<id>`` reads one post; ``/api/titles`` kept the eager load of
the list it was copied from and never reads the author (an unused eager load). Knows nothing of
flowscope.

    app = create_app("sqlite:////tmp/blog.db", authors=12)
"""

from __future__ import annotations

from flask import Flask, jsonify
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload


class Base(DeclarativeBase):
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
    return {"id": post.id, "title": post.title, "author": post.author.name}   # the lazy load


def create_app(database_url: str, authors: int = 12) -> Flask:
    engine = create_engine(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        people = [Author(name=f"author {i}") for i in range(authors)]
        session.add_all(Post(title=f"post {i}", author=person) for i, person in enumerate(people))
        session.commit()

    app = Flask(__name__)

    @app.get("/api/posts")
    def list_posts():
        with Session(engine) as session:
            return jsonify([serialize(post) for post in session.scalars(select(Post).order_by(Post.id))])

    @app.get("/api/feed")
    def feed():
        with Session(engine) as session:
            posts = session.scalars(select(Post).order_by(Post.id.desc())).all()
            return jsonify({"items": [serialize(post) for post in posts]})

    @app.get("/api/posts/eager")
    def list_posts_eager():
        with Session(engine) as session:
            query = select(Post).options(selectinload(Post.author)).order_by(Post.id)
            return jsonify([serialize(post) for post in session.scalars(query)])

    @app.get("/api/titles")
    def list_titles():
        with Session(engine) as session:
            query = select(Post).options(selectinload(Post.author)).order_by(Post.id)
            posts = session.scalars(query).all()                  # the unused eager load
            return jsonify([post.title for post in posts])

    @app.get("/api/posts/<int:post_id>")
    def get_post(post_id: int):
        with Session(engine) as session:
            return jsonify(serialize(session.get(Post, post_id)))

    return app
