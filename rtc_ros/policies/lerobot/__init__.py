"""LeRobot's flow VLAs (SmolVLA, pi0, pi0.5): the model behind the FlowPolicy protocol
(:mod:`.model`) and LeRobot ``save_pretrained`` folders with their processors (:mod:`.folder`).
"""
