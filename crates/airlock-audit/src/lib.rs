//! airlock-audit (being written).
