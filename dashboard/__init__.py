"""The Streamlit dashboard (lands with the dashboard issue)."""
