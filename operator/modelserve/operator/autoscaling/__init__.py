"""Dynamic loading, the operator's side: the gateways' load reports, the pure decisions
(activation, load scaling, idle sleep, the drain fence, GPU-aware LRU eviction) and the
loop that carries them out."""
