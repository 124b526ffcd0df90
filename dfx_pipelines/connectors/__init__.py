"""One folder per connector; each may import `dfx_pipelines.platform`, never another connector."""
