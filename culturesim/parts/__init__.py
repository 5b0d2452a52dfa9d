"""The parts of a run: social learning, the coordination rules, metrics, networks, traits and lineage,
corpora, embeddings, and the LLM backends (llm/).
"""
