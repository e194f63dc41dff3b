"""Inference-time scaling: best-of-N, self-consistency, particle filtering and beam search.

The algorithms are pure logic over two interfaces, a language model (`lm.LanguageModel`)
and a reward (`rewards.Reward`); they do no I/O of their own. The concrete language
model and rewards (`openai_lm`, `rewards`, `reward_model`) speak OpenAI-style JSON
through a `post(path, body)` callable that the gateway supplies, so every upstream call
goes through the gateway's own HTTP client. Written natively rather than on its_hub:
see `algorithms` for why.
"""
