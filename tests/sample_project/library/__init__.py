"""A small book catalog on SQLAlchemy 2: authors, books, reviews, shop settings."""
