"""A labelled corpus of data-access patterns: what a finding rule must report, and what it must not.

Each :class:`Scenario` runs one pattern, as an application would write it, against a small blog
schema (authors, posts, tags, a category tree, an event log) on a real database, and carries its
label: the findings it must produce (``kind``, relationship) and the SQL that proves the label
(``proof``: a fragment of the statement and how many times it must run), checked by counting the
SQL that actually ran in a run without any flowscope operation. An eager-load scenario also takes
its loader (``loader=selectinload``, say) and carries ``lazy_proof``: what runs with ``lazyload``
in its place (an eager load no code reads leaves the lazy twin with no load of that relationship
at all; one that is read leaves it with lazy loads). Sync scenarios take a ``Session`` factory and
the engine; async ones an ``AsyncSession`` factory.

    for scenario in SCENARIOS:
        scenario.run(world)
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, ForeignKey, Table, delete, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncAttrs, async_sessionmaker
from sqlalchemy.orm import (DeclarativeBase, DynamicMapped, Mapped, Session, WriteOnlyMapped, joinedload,
                            mapped_column, relationship, selectinload, sessionmaker, with_loader_criteria)

import flowscope

AUTHORS = 12
POSTS_PER_AUTHOR = 2
TAGS = 4


class CorpusBase(AsyncAttrs, DeclarativeBase):
    pass


post_tags = Table("corpus_post_tags", CorpusBase.metadata,
                  Column("post_id", ForeignKey("corpus_posts.id"), primary_key=True),
                  Column("tag_id", ForeignKey("corpus_tags.id"), primary_key=True))


class Author(CorpusBase):
    __tablename__ = "corpus_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    posts: Mapped[list[Post]] = relationship(back_populates="author", order_by="Post.id")
    posts_query: DynamicMapped[Post] = relationship(viewonly=True, lazy="dynamic", order_by="Post.id")
    posts_written: WriteOnlyMapped[Post] = relationship(viewonly=True, order_by="Post.id")


class Post(CorpusBase):
    __tablename__ = "corpus_posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    published: Mapped[bool] = mapped_column(default=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("corpus_authors.id"))
    author: Mapped[Author] = relationship(back_populates="posts")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, order_by="Tag.id")


class Tag(CorpusBase):
    __tablename__ = "corpus_tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]


class Category(CorpusBase):
    __tablename__ = "corpus_categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("corpus_categories.id"))
    children: Mapped[list[Category]] = relationship(order_by="Category.id")


class Event(CorpusBase):
    __tablename__ = "corpus_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int]
    note: Mapped[str]


def seed(engine: Engine) -> None:
    CorpusBase.metadata.drop_all(engine)
    CorpusBase.metadata.create_all(engine)
    with Session(engine) as session:
        tags = [Tag(label=f"tag {i}") for i in range(TAGS)]
        for a in range(AUTHORS):
            author = Author(name=f"author {a}")
            author.posts = [Post(title=f"post {a}.{p}", published=p == 0,
                                 tags=[tags[(a + p) % TAGS], tags[(a + p + 1) % TAGS]])
                            for p in range(POSTS_PER_AUTHOR)]
            session.add(author)
        root = Category(name="root", children=[
            Category(name=f"c{i}", children=[Category(name=f"c{i}.{j}") for j in range(3)]) for i in range(3)])
        session.add(root)
        session.commit()


@dataclass
class World:
    """What a scenario runs against: one database, sync and async."""

    engine: Engine
    sessions: sessionmaker
    async_sessions: async_sessionmaker


@dataclass(frozen=True)
class Proof:
    """``fragment`` (case-insensitive, in the SQL sent to the driver) ran ``executions`` times."""

    fragment: str
    executions: int
    distinct_parameters: bool = True   # each with its own parameters (else: all identical)


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[World], Any]
    expected: frozenset[tuple[str, str | None]] = frozenset()   # (kind, relationship)
    proof: Proof | None = None
    is_async: bool = False
    owner: str | None = None          # the operation that owns the findings (nested scenarios)
    lazy_proof: Proof | None = None   # eager-load scenarios: what their run with loader=lazyload sends

    @property
    def operation(self) -> str:
        return f"corpus: {self.name}"


SCENARIOS: list[Scenario] = []


def scenario(name: str, *, expect: tuple[tuple[str, str | None], ...] = (), proof: Proof | None = None,
             owner: str | None = None, lazy_proof: Proof | None = None) -> Callable[[Callable], Callable]:
    def register(run: Callable) -> Callable:
        SCENARIOS.append(Scenario(name, run, frozenset(expect), proof, asyncio.iscoroutinefunction(run), owner,
                                  lazy_proof))
        return run
    return register


# --- relationships loaded lazily in a loop (N+1) and their eager twins ------------------------------

@scenario("many-to-one lazy loop", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS))
def many_to_one_lazy(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post).where(Post.published)):
            post.author.name                                                  # N+1: Post.author


@scenario("many-to-one selectinload", proof=Proof("FROM corpus_authors", 1))
def many_to_one_selectin(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post).where(Post.published).options(selectinload(Post.author))):
            post.author.name


@scenario("many-to-one joinedload", proof=Proof("FROM corpus_posts", 1))
def many_to_one_joined(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post).options(joinedload(Post.author))):
            post.author.name


@scenario("one-to-many lazy loop", expect=(("n_plus_one", "Author.posts"),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def one_to_many_lazy(world: World) -> None:
    with world.sessions() as session:
        for author in session.scalars(select(Author)):
            len(author.posts)                                                 # N+1: Author.posts


@scenario("one-to-many selectinload", proof=Proof("FROM corpus_posts", 1))
def one_to_many_selectin(world: World) -> None:
    with world.sessions() as session:
        for author in session.scalars(select(Author).options(selectinload(Author.posts))):
            len(author.posts)


@scenario("many-to-many lazy loop", expect=(("n_plus_one", "Post.tags"),),
          proof=Proof("corpus_tags.label", AUTHORS * POSTS_PER_AUTHOR))
def many_to_many_lazy(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post)):
            [tag.label for tag in post.tags]                                  # N+1: Post.tags


@scenario("many-to-many selectinload", proof=Proof("corpus_tags.label", 1))
def many_to_many_selectin(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post).options(selectinload(Post.tags))):
            [tag.label for tag in post.tags]


@scenario("self-referential tree walked lazily", expect=(("n_plus_one", "Category.children"),),
          proof=Proof("FROM corpus_categories", 1 + 13))
def tree_lazy(world: World) -> None:
    def walk(category: Category) -> int:
        return 1 + sum(walk(child) for child in category.children)           # N+1: Category.children
    with world.sessions() as session:
        root = session.scalars(select(Category).where(Category.parent_id.is_(None))).one()
        walk(root)


@scenario("self-referential tree, selectinload per level", proof=Proof("FROM corpus_categories", 4))
def tree_selectin(world: World) -> None:
    def walk(category: Category) -> int:
        return 1 + sum(walk(child) for child in category.children)
    with world.sessions() as session:
        query = select(Category).where(Category.parent_id.is_(None)).options(
            selectinload(Category.children, recursion_depth=3))
        walk(session.scalars(query).one())


@scenario("dynamic relationship queried per row", expect=(("n_plus_one", None),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def dynamic_per_row(world: World) -> None:
    with world.sessions() as session:
        for author in session.scalars(select(Author)):
            author.posts_query.filter(Post.published).all()                  # N+1 (an explicit query)


@scenario("write-only relationship selected per row", expect=(("n_plus_one", None),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def write_only_per_row(world: World) -> None:
    with world.sessions() as session:
        for author in session.scalars(select(Author)).all():
            session.scalars(author.posts_written.select()).all()             # N+1 (an explicit query)


@scenario("loader criteria, lazy loop", expect=(("n_plus_one", "Author.posts"),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def loader_criteria_lazy(world: World) -> None:
    with world.sessions() as session:
        query = select(Author).options(with_loader_criteria(Post, Post.published))
        for author in session.scalars(query):
            len(author.posts)                                                 # N+1: Author.posts


@scenario("loader criteria, selectinload", proof=Proof("FROM corpus_posts", 1))
def loader_criteria_selectin(world: World) -> None:
    with world.sessions() as session:
        query = select(Author).options(selectinload(Author.posts), with_loader_criteria(Post, Post.published))
        for author in session.scalars(query):
            len(author.posts)


@scenario("a short lazy loop, below the threshold", proof=Proof("FROM corpus_authors", 3))
def short_lazy_loop(world: World) -> None:
    with world.sessions() as session:
        for post in session.scalars(select(Post).where(Post.author_id <= 3, Post.published)):
            post.author.name


# --- lookups by key ------------------------------------------------------------------------------------

@scenario("session.get in a loop", expect=(("n_plus_one", None),), proof=Proof("FROM corpus_authors", AUTHORS))
def get_loop(world: World) -> None:
    with world.sessions() as session:
        for author_id in range(1, AUTHORS + 1):
            session.get(Author, author_id)                                    # N+1: one get per id


@scenario("session.get of loaded rows: identity-map hits", proof=Proof("FROM corpus_authors", 1))
def get_identity_map_hits(world: World) -> None:
    with world.sessions() as session:
        loaded = session.scalars(select(Author)).all()   # held: the identity map keeps them while referenced
        for author_id in range(1, AUTHORS + 1):
            assert session.get(Author, author_id) in loaded                   # no SQL: already loaded


@scenario("session.get beside lazy loads of the same SQL", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS))
def get_beside_lazy(world: World) -> None:
    with world.sessions() as session:
        current_user = session.get(Author, 1)                                 # authentication, say
        for post in session.scalars(select(Post).where(Post.published)):
            post.author.name                                                  # N+1: Post.author (11 of them)
        assert current_user.name


@scenario("the same query with the same parameters, repeated", expect=(("repeated_query", None),),
          proof=Proof("FROM corpus_authors", 4, distinct_parameters=False))
def repeated_identical(world: World) -> None:
    for _ in range(4):
        with world.sessions() as session:
            session.scalars(select(Author).where(Author.name == "author 1")).one()   # repeated


# --- Core and text() -----------------------------------------------------------------------------------

@scenario("Core select per id", expect=(("n_plus_one", None),), proof=Proof("FROM corpus_posts", AUTHORS))
def core_loop(world: World) -> None:
    posts = Post.__table__
    with world.engine.connect() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(select(posts).where(posts.c.author_id == author_id)).all()   # N+1


@scenario("text() with bound parameters per id", expect=(("n_plus_one", None),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def text_bound_loop(world: World) -> None:
    with world.engine.connect() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(text("SELECT title FROM corpus_posts WHERE author_id = :a"), {"a": author_id}).all()


@scenario("text() with literals inlined per id", expect=(("n_plus_one", None),),
          proof=Proof("FROM corpus_posts", AUTHORS))
def text_literal_loop(world: World) -> None:
    with world.engine.connect() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(text(f"SELECT title FROM corpus_posts WHERE author_id = {author_id}")).all()


@scenario("text() repeated with identical parameters", expect=(("repeated_query", None),),
          proof=Proof("FROM corpus_tags", 5, distinct_parameters=False))
def text_repeated(world: World) -> None:
    with world.engine.connect() as conn:
        for _ in range(5):
            conn.execute(text("SELECT label FROM corpus_tags WHERE id = :i"), {"i": 2}).all()


# --- batches and pages: many executions, none of them per row ------------------------------------------

@scenario("IN-list batches of ids", proof=Proof("FROM corpus_posts", 12))
def in_list_batches(world: World) -> None:
    ids = list(range(1, AUTHORS * POSTS_PER_AUTHOR + 1)) * 25      # 600 ids, 12 chunks of 50
    with world.sessions() as session:
        for start in range(0, len(ids), 50):
            session.scalars(select(Post).where(Post.id.in_(ids[start:start + 50]))).all()


@scenario("keyset pagination", proof=Proof("FROM corpus_posts", 13))
def keyset_pages(world: World) -> None:
    with world.sessions() as session:
        last = 0
        for _ in range(13):
            page = session.scalars(select(Post).where(Post.id > last).order_by(Post.id).limit(2)).all()
            last = page[-1].id if page else last


@scenario("offset pagination", proof=Proof("FROM corpus_posts", 12))
def offset_pages(world: World) -> None:
    with world.sessions() as session:
        for page in range(12):
            session.scalars(select(Post).order_by(Post.id).limit(2).offset(page * 2)).all()


# --- writes ---------------------------------------------------------------------------------------------

@scenario("ORM insert() per row", expect=(("write_loop", None),), proof=Proof("INSERT INTO corpus_events", AUTHORS))
def orm_insert_loop(world: World) -> None:
    with world.sessions() as session:
        for author_id in range(1, AUTHORS + 1):
            session.execute(insert(Event).values(author_id=author_id, note="seen"))   # write loop
        session.commit()


@scenario("Core insert per row", expect=(("write_loop", None),), proof=Proof("INSERT INTO corpus_events", AUTHORS))
def core_insert_loop(world: World) -> None:
    with world.engine.begin() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(Event.__table__.insert(), {"author_id": author_id, "note": "core"})   # write loop


@scenario("executemany insert", proof=Proof("INSERT INTO corpus_events", 1))
def executemany_insert(world: World) -> None:
    with world.engine.begin() as conn:
        conn.execute(Event.__table__.insert(), [{"author_id": a, "note": "many"} for a in range(1, AUTHORS + 1)])


@scenario("ORM bulk insert(Model), rows", proof=Proof("INSERT INTO corpus_events", 1))
def orm_bulk_insert(world: World) -> None:
    with world.sessions() as session:
        session.execute(insert(Event), [{"author_id": a, "note": "bulk"} for a in range(1, AUTHORS + 1)])
        session.commit()


@scenario("session.add_all and one flush", proof=None)
def add_all_flush(world: World) -> None:
    with world.sessions() as session:
        session.add_all(Event(author_id=a, note="added") for a in range(1, AUTHORS + 1))
        session.commit()


@scenario("update per row", expect=(("write_loop", None),), proof=Proof("UPDATE corpus_events", AUTHORS))
def update_loop(world: World) -> None:
    with world.engine.begin() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(update(Event).where(Event.author_id == author_id).values(note=f"n{author_id}"))


@scenario("one set-based update", proof=Proof("UPDATE corpus_events", 1))
def set_based_update(world: World) -> None:
    with world.engine.begin() as conn:
        conn.execute(update(Event).where(Event.author_id <= AUTHORS).values(note="all"))


@scenario("delete per row", expect=(("write_loop", None),), proof=Proof("DELETE FROM corpus_events", AUTHORS))
def delete_loop(world: World) -> None:
    with world.engine.begin() as conn:
        for author_id in range(1, AUTHORS + 1):
            conn.execute(delete(Event).where(Event.author_id == author_id))    # write loop


# --- eager loads nobody reads (unused_eager_load), and the ones somebody does -------------------------

@scenario("selectinload never read", expect=(("unused_eager_load", "Post.tags"),),
          proof=Proof("corpus_tags.label", 1), lazy_proof=Proof("corpus_tags.label", 0))
def selectin_unread(world: World, loader: Callable = selectinload) -> None:
    with world.sessions() as session:
        posts = session.scalars(select(Post).options(loader(Post.tags))).all()   # unused: Post.tags
        [post.title for post in posts]


@scenario("joinedload never read", expect=(("unused_eager_load", "Post.author"),),
          proof=Proof("JOIN corpus_authors", 1), lazy_proof=Proof("FROM corpus_authors", 0))
def joined_unread(world: World, loader: Callable = joinedload) -> None:
    with world.sessions() as session:
        posts = session.scalars(select(Post).options(loader(Post.author))).all()   # unused: Post.author
        [post.title for post in posts]


@scenario("selectinload read for one row only", proof=Proof("FROM corpus_posts", 1),
          lazy_proof=Proof("FROM corpus_posts", 1))
def selectin_read_once(world: World, loader: Callable = selectinload) -> None:
    with world.sessions() as session:
        authors = session.scalars(select(Author).order_by(Author.id).options(loader(Author.posts))).all()
        [author.name for author in authors]
        authors[0].posts[0].title                                             # read: the load is needed


@scenario("selectinload in a nested operation, read by its caller", proof=Proof("corpus_tags.label", 1),
          lazy_proof=Proof("corpus_tags.label", AUTHORS * POSTS_PER_AUTHOR), owner="corpus: nested loader")
def selectin_read_by_caller(world: World, loader: Callable = selectinload) -> None:
    with world.sessions() as session:
        with flowscope.operation("corpus: nested loader"):
            posts = session.scalars(select(Post).options(loader(Post.tags))).all()
        [len(post.tags) for post in posts]                                    # read after the inner one ended


@scenario("AsyncSession: selectinload never read", expect=(("unused_eager_load", "Post.author"),),
          proof=Proof("FROM corpus_authors", 1), lazy_proof=Proof("FROM corpus_authors", 0))
async def async_selectin_unread(world: World, loader: Callable = selectinload) -> None:
    async with world.async_sessions() as session:
        posts = (await session.scalars(select(Post).options(loader(Post.author)))).all()   # unused: Post.author
        [post.title for post in posts]


# --- nesting, threads, tasks ----------------------------------------------------------------------------

@scenario("an N+1 inside a nested operation", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS), owner="corpus: nested render")
def nested(world: World) -> None:
    with world.sessions() as session:
        posts = session.scalars(select(Post).where(Post.published)).all()
        with flowscope.operation("corpus: nested render"):
            [post.author.name for post in posts]                              # N+1, owned by the inner one


@scenario("lazy loads in a thread that carries the operation's context", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS))
def in_thread(world: World) -> None:
    def render() -> None:
        with world.sessions() as session:
            for post in session.scalars(select(Post).where(Post.published)):
                post.author.name                                              # N+1: Post.author
    worker = threading.Thread(target=contextvars.copy_context().run, args=(render,))
    worker.start()
    worker.join()


@scenario("AsyncSession: awaitable_attrs per row", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS))
async def async_lazy(world: World) -> None:
    async with world.async_sessions() as session:
        for post in (await session.scalars(select(Post).where(Post.published))).all():
            (await post.awaitable_attrs.author).name                         # N+1: Post.author


@scenario("AsyncSession: selectinload", proof=Proof("FROM corpus_authors", 1))
async def async_selectin(world: World) -> None:
    async with world.async_sessions() as session:
        query = select(Post).where(Post.published).options(selectinload(Post.author))
        for post in (await session.scalars(query)).all():
            post.author.name


@scenario("asyncio tasks, each lazy-loading its share", expect=(("n_plus_one", "Post.author"),),
          proof=Proof("FROM corpus_authors", AUTHORS))
async def async_tasks(world: World) -> None:
    async def render(first: int) -> None:
        async with world.async_sessions() as session:
            query = select(Post).where(Post.published, Post.author_id.between(first, first + 2))
            for post in (await session.scalars(query)).all():
                (await post.awaitable_attrs.author).name                     # N+1 across the tasks
    await asyncio.gather(*(render(first) for first in range(1, AUTHORS + 1, 3)))


@dataclass
class Outcome:
    """What the rules reported for the corpus, scored against the labels."""

    true_positives: list[tuple[str, str, str | None]] = field(default_factory=list)
    false_positives: list[tuple[str, str, str | None]] = field(default_factory=list)
    missed: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = len(self.true_positives) + len(self.false_positives)
        return len(self.true_positives) / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = len(self.true_positives) + len(self.missed)
        return len(self.true_positives) / labelled if labelled else 1.0
