"""placeholder"""
from simulator.faces.tencent.api import Service


class ClbService(Service):
    name = "clb"
    version = "2018-03-17"

    def __init__(self, lab, ssl):
        self.lab, self.ssl = lab, ssl

    def actions(self):
        return {}
