"""What the API producers and the model workers share: settings, Redis key names, the wire protocol."""
