"""The neuronviz Streamlit dashboard (``streamlit run app/main.py``); see app/main.py."""
