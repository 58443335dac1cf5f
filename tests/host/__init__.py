"""A host project with views of its own, served with README's ``authapi.serve`` one-liner."""
