"""edgelambda: a self-hosted runtime for AWS Lambda functions."""

__version__ = "0.1.0"
