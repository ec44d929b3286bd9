"""The Streamlit dashboard: pages over the service's read plans."""
