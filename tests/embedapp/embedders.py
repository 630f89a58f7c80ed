"""A HashingEmbedder slowed to a steady pace, so the SIGKILL test can kill a backfill mid-run
on any machine. Same identity and vectors as the real one."""

import time

from vectorsearch.embedders import HashingEmbedder


class SlowHashingEmbedder(HashingEmbedder):
    def embed_documents(self, texts):
        time.sleep(0.001 * len(texts))
        return super().embed_documents(texts)
