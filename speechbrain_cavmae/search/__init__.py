"""Search your own videos by sound or by sight: an index of CAV-MAE embeddings of media
files and their moments (:mod:`.index`), queries (:mod:`.query`) and a local web page
(:mod:`.server`). See ``docs/search.md``."""

from speechbrain_cavmae.search.query import Hit, VideoSearch

__all__ = ["Hit", "VideoSearch"]
