"""End-to-end pipelines (plan builders + entrypoints); import path qscope.pipelines."""
