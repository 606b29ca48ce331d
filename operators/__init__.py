"""Ray Data operators (callable classes for map_batches); import path qscope.operators."""
