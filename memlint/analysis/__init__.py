"""Graph structure every consumer shares, computed from the IR and its costs: the KV cache and
dim roles of a decoder (structure), what config.json beside an export says (hfconfig), and the
memory live at each point of a run (liveness). Rules and the LLM features read the same
analyses; nothing here imports rules, frontends, llm, report or api."""
