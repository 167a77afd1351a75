"""HTTP endpoints: one class per URL, each method validates, calls one service and renders."""
