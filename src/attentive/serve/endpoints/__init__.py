"""The routers, one module per endpoint family; ``app.create_app`` mounts them."""
