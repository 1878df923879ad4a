"""tierroute: complexity-based LLM routing on Ray Serve."""

__version__ = "0.1.0"
