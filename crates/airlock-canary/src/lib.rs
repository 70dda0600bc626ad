//! airlock-canary (being written).
